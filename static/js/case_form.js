// The case form (templates/viewer/case_form.html): the blank choice of stage and HR status says
// what leaving it blank gives as T, N, ER and PR change (the server derives the same:
// viewer/cases/forms.py), and a chosen stage that contradicts T and N is flagged at once.
const form = document.getElementById('case-form');
const rules = JSON.parse(document.getElementById('clinical-derivations')?.textContent || '{"stages": {}}');

function hrFrom(er, pr) {  // viewer/cases/clinical.py hr_status_from
  if (er === 'positive' || pr === 'positive') return 'positive';
  if (er === 'negative' && pr === 'negative') return 'negative';
  return '';
}

function update() {
  const value = (name) => form.elements[name]?.value || '';
  const t = value('clinical_t');
  const n = value('clinical_n');
  const substage = rules.stages[`${t} ${n}`] || '';
  const group = substage.replace(/[ABC]$/, '');
  const stage = form.elements.clinical_stage;
  const hr = form.elements.hr_status;
  const derivedHr = hrFrom(value('er_status'), value('pr_status'));
  if (stage) stage.options[0].textContent = substage ? `derived: ${group} (${substage})` : 'unknown (from T/N)';
  if (hr) hr.options[0].textContent = derivedHr ? `derived: ${derivedHr}` : 'unknown (from ER/PR)';
  const warning = document.getElementById('stage-contradiction');
  const contradicts = Boolean(stage && stage.value && group && stage.value !== group)
    && !document.querySelector('.field-clinical_stage .field-error');  // the server's message says it already
  if (warning) {
    warning.hidden = !contradicts;
    warning.textContent = contradicts
      ? `Stage ${stage.value} contradicts ${t} ${n} (stage ${group}, ${substage}): saving asks you to confirm it.` : '';
  }
}

if (form) {
  form.addEventListener('change', update);
  update();
}
