"""The case form of the page: a new case, or a case's clinical data, with validation and the
derived values (viewer.cases.clinical) filled in where the user left them blank."""
from __future__ import annotations

from django import forms

from cases.models import Case
from viewer.cases.clinical import anatomic_stage_group, anatomic_substage, hr_status_from

CLINICAL_FORM_FIELDS = ["age", "clinical_t", "clinical_n", "clinical_stage", "er_status", "pr_status",
                        "hr_status", "her2_ihc", "grade", "regimen", "pcr", "notes"]


class CaseForm(forms.ModelForm):
    """Clinical data of a case; `case_id` only when the case is new.

    HR status and stage are derived (from ER/PR, from T/N) unless the user enters them. A derived
    value is shown as derived, never pre-filled as if entered: its select stays on the blank
    choice, which says "derived: II (IIB)". An entered stage that contradicts T and N (AJCC 8th
    anatomic) must be confirmed (it may be a prognostic stage); an entered HR status that
    contradicts ER/PR is refused (HR is defined by them)."""

    pcr = forms.NullBooleanField(label="pCR", required=False, widget=forms.NullBooleanSelect(),
                                 help_text="Outcome, when known.")
    confirm_stage = forms.BooleanField(
        required=False, label="Keep the stage as entered",
        help_text="Tick when the stage differs from T and N on purpose (e.g. a prognostic stage group).")

    field_order = ["case_id", *CLINICAL_FORM_FIELDS[:CLINICAL_FORM_FIELDS.index("clinical_stage") + 1], "confirm_stage"]

    class Meta:
        model = Case
        fields = ["case_id", *CLINICAL_FORM_FIELDS]
        widgets = {"notes": forms.Textarea(attrs={"rows": 2}), "age": forms.NumberInput(attrs={"min": 0, "max": 120})}
        help_texts = {
            "case_id": "A pseudonymous id, never a patient name.",
            "clinical_stage": "Left blank: derived from clinical T and N (AJCC 8th edition anatomic stage group).",
            "hr_status": "Left blank: derived from ER and PR (positive if either is positive).",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pcr"].widget.choices = [("unknown", "unknown"), ("true", "yes (pCR)"),
                                             ("false", "no (residual disease)")]
        if self.instance.pk:
            del self.fields["case_id"]  # the id is the case's name in links and records: fixed once made
        for name in ("clinical_t", "clinical_n", "clinical_stage", "er_status", "pr_status", "hr_status", "her2_ihc"):
            self.fields[name].choices = [("", "unknown")] + list(self.fields[name].choices)[1:]
        self.stage_conflict = ""  # set by clean(): the message of an unconfirmed contradiction
        if self.instance.pk and not self.is_bound:
            # a stored value that is what its inputs give was derived: show it as derived, not as entered
            for name, derived in derived_values(self.instance).items():
                if derived and getattr(self.instance, name) == derived:
                    self.initial[name] = ""
        self._label_derived_choices()

    def _value(self, name: str) -> str:
        if self.is_bound:
            return self.data.get(self.add_prefix(name), "") or ""
        return self.initial.get(name, getattr(self.instance, name, "")) or ""

    def _label_derived_choices(self) -> None:
        """The blank choice of HR status and stage says what leaving it blank gives now."""
        values = {name: self._value(name) for name in ("clinical_t", "clinical_n", "er_status", "pr_status")}
        substage = anatomic_substage(values["clinical_t"], values["clinical_n"])
        hr = hr_status_from(values["er_status"], values["pr_status"])
        blanks = {
            "clinical_stage": f"derived: {substage.rstrip('ABC')} ({substage})" if substage else "unknown (from T/N)",
            "hr_status": f"derived: {hr}" if hr else "unknown (from ER/PR)",
        }
        for name, text in blanks.items():
            self.fields[name].choices = [("", text)] + list(self.fields[name].choices)[1:]

    def clean_case_id(self):
        case_id = self.cleaned_data["case_id"]
        if case_id.lower() == "new":  # /cases/new/ is this form's address
            raise forms.ValidationError("'new' is reserved; choose another case id.")
        return case_id

    def clean(self):
        data = super().clean()
        er, pr, hr = data.get("er_status", ""), data.get("pr_status", ""), data.get("hr_status", "")
        derived_hr = hr_status_from(er, pr)
        if hr and derived_hr and hr != derived_hr:
            self.add_error("hr_status", f"HR {hr} contradicts ER {er or 'unknown'} / PR {pr or 'unknown'} "
                                        f"(that makes HR {derived_hr}); correct one or leave HR blank.")
        elif not hr:
            data["hr_status"] = derived_hr
        t, n, stage = data.get("clinical_t", ""), data.get("clinical_n", ""), data.get("clinical_stage", "")
        substage = anatomic_substage(t, n)
        if not stage:
            data["clinical_stage"] = substage.rstrip("ABC")
        elif substage and stage != substage.rstrip("ABC") and not data.get("confirm_stage") \
                and not self._confirmed_before(stage, t, n):
            self.stage_conflict = (f"Stage {stage} contradicts {t} {n}, which is stage {substage.rstrip('ABC')} "
                                   f"({substage}, AJCC 8th anatomic). Leave the stage blank to use "
                                   f"{substage.rstrip('ABC')}, correct T or N, or tick \u201cKeep the stage as "
                                   f"entered\u201d.")
            self.add_error("clinical_stage", self.stage_conflict)
        return data

    def _confirmed_before(self, stage: str, t: str, n: str) -> bool:
        """The case already has this stage with this T and N: it was confirmed when entered."""
        old = self.instance if self.instance.pk else None
        return old is not None and (old.clinical_stage, old.clinical_t, old.clinical_n) == (stage, t, n)



def derived_values(case: Case) -> dict[str, str]:
    """What HR status and stage would be if derived from the case's ER/PR and T/N ('' when not)."""
    return {"hr_status": hr_status_from(case.er_status, case.pr_status),
            "clinical_stage": anatomic_stage_group(case.clinical_t, case.clinical_n)}


def clinical_provenance(case: Case) -> dict[str, str]:
    """For the case page: whether HR status and stage were derived ('derived') or entered by hand
    ('entered'), with the substage the stored T and N give."""
    shown = {}
    for name, derived in derived_values(case).items():
        value = getattr(case, name)
        shown[name] = "" if not value else "derived" if value == derived else "entered"
    shown["substage"] = anatomic_substage(case.clinical_t, case.clinical_n)
    return shown
