"""The case form of the page: a new case, or a case's clinical data, with validation and the
derived values (viewer.cases.clinical) filled in where the user left them blank."""
from __future__ import annotations

from django import forms

from cases.models import Case
from viewer.cases.clinical import anatomic_stage_group, anatomic_substage, hr_status_from

CLINICAL_FORM_FIELDS = ["age", "clinical_t", "clinical_n", "clinical_stage", "er_status", "pr_status",
                        "hr_status", "her2_ihc", "grade", "regimen", "pcr", "notes"]


class CaseForm(forms.ModelForm):
    """Clinical data of a case; `case_id` only when the case is new."""

    pcr = forms.NullBooleanField(label="pCR", required=False, widget=forms.NullBooleanSelect(),
                                 help_text="Outcome, when known.")

    class Meta:
        model = Case
        fields = ["case_id", *CLINICAL_FORM_FIELDS]
        widgets = {"notes": forms.Textarea(attrs={"rows": 2}), "age": forms.NumberInput(attrs={"min": 0, "max": 120})}
        help_texts = {
            "case_id": "A pseudonymous id, never a patient name.",
            "clinical_stage": "Left blank: derived from T and N (AJCC 8th edition anatomic stage).",
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

    def clean_case_id(self):
        case_id = self.cleaned_data["case_id"]
        if case_id.lower() == "new":  # /cases/new/ is this form's address
            raise forms.ValidationError("'new' is reserved; choose another case id.")
        return case_id

    def clean(self):
        data = super().clean()
        old = self.instance if self.instance.pk else None
        if old is not None:
            # A value that was derived (it equals what the old inputs give) follows its inputs when
            # they change; one entered by hand (it differs) is kept.
            if ((data.get("er_status"), data.get("pr_status")) != (old.er_status, old.pr_status)
                    and data.get("hr_status") == old.hr_status == hr_status_from(old.er_status, old.pr_status)):
                data["hr_status"] = ""
            if ((data.get("clinical_t"), data.get("clinical_n")) != (old.clinical_t, old.clinical_n)
                    and data.get("clinical_stage") == old.clinical_stage
                    == anatomic_stage_group(old.clinical_t, old.clinical_n)):
                data["clinical_stage"] = ""
        er, pr, hr = data.get("er_status", ""), data.get("pr_status", ""), data.get("hr_status", "")
        derived_hr = hr_status_from(er, pr)
        if hr and derived_hr and hr != derived_hr:
            self.add_error("hr_status", f"HR {hr} contradicts ER {er or 'unknown'} / PR {pr or 'unknown'} "
                                        f"(that makes HR {derived_hr}); correct one or leave HR blank.")
        elif not hr:
            data["hr_status"] = derived_hr
        t, n = data.get("clinical_t", ""), data.get("clinical_n", "")
        if not data.get("clinical_stage"):
            data["clinical_stage"] = anatomic_stage_group(t, n)
        return data

    @property
    def derived_substage(self) -> str:
        source = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        t = source.get("clinical_t", getattr(self.instance, "clinical_t", ""))
        n = source.get("clinical_n", getattr(self.instance, "clinical_n", ""))
        return anatomic_substage(t, n)
