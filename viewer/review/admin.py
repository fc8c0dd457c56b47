from django.contrib import admin

from viewer.review.models import Annotation, AnnotationLabel, AnnotationRevision, Review


@admin.register(AnnotationLabel)
class AnnotationLabelAdmin(admin.ModelAdmin):
    """The editable list of annotation labels."""

    list_display = ("name", "color", "order", "active")
    list_editable = ("color", "order", "active")


class AnnotationRevisionInline(admin.TabularInline):
    model = AnnotationRevision
    extra = 0
    can_delete = False
    readonly_fields = ("number", "action", "user", "at", "label_name", "shape", "comment", "deleted")
    exclude = ("geometry",)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    """Read-only here: annotations change through the viewer (kept as revisions)."""

    list_display = ("id", "slide", "label", "shape", "author", "deleted", "version", "updated_at")
    list_filter = ("label", "shape", "deleted", "source")
    inlines = [AnnotationRevisionInline]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ("case", "reviewer", "agrees", "model_risk_group", "expected_response", "her2_score",
                    "automated_her2", "confidence", "submitted", "is_disagreement", "updated_at")
    list_filter = ("is_disagreement", "submitted", "agrees", "expected_response", "her2_score")

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False
