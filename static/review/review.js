// Review form on the case page: PUT /api/cases/<id>/reviews/mine/ with the version edited
// (optimistic concurrency: 409 when it was saved elsewhere meanwhile).
const config = JSON.parse(document.getElementById('review-config').textContent);
const form = document.getElementById('review-form');

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const viewerConfig = document.getElementById('case-viewer-config');
  try { return JSON.parse(viewerConfig.textContent).csrfToken || ''; } catch { return ''; }
}

function showStatus(text, { error = false } = {}) {
  const status = document.getElementById('review-status');
  status.textContent = text;
  status.classList.toggle('error', error);
}

async function save(submitted) {
  const data = new FormData(form);
  const agrees = data.get('agrees');
  const body = {
    version: Number(form.dataset.version || 0),
    agrees: agrees === null ? null : agrees === 'true',
    risk_group: data.get('risk_group') || '',
    expected_response: data.get('expected_response') || '',
    her2_score: data.get('her2_score') || '',
    ish_result: data.get('ish_result') || '',
    confidence: data.get('confidence') ? Number(data.get('confidence')) : null,
    comment: data.get('comment') || '',
    submitted,
  };
  const response = await fetch(config.reviewUrl, {
    method: 'PUT', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRFToken': csrfToken(), Accept: 'application/json' },
    body: JSON.stringify(body),
  });
  const reply = await response.json().catch(() => ({}));
  if (response.status === 409) {
    showStatus(`Not saved: ${reply.detail} Your edits are still in the form; reload the page to see the newer version.`, { error: true });
    return;
  }
  if (!response.ok) {
    // the server's messages say what to do in the form's words: no internal field names
    const messages = Object.values(reply).map((v) => [].concat(v).join(' ')).join(' ');
    showStatus(`Not saved: ${messages || response.status}`, { error: true });
    return;
  }
  form.dataset.version = String(reply.version);
  showStatus(`${reply.submitted ? 'Submitted' : 'Draft saved'} (v${reply.version})${reply.is_disagreement ? ' · disagreement' : ''} · case ${reply.current.case_status.replace('_', ' ')}`);
  document.dispatchEvent(new CustomEvent('review:saved', { detail: reply }));
}

if (form) {
  form.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-submit]');
    if (button) save(button.dataset.submit === '1').catch((error) => showStatus(`Not saved: ${error}`, { error: true }));
  });
  form.addEventListener('submit', (event) => event.preventDefault());
}
