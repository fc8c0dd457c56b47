from django.contrib import admin

from cases.models import AuditEvent, Case, Slide, SlideAlignment


class SlideInline(admin.TabularInline):
    model = Slide
    extra = 0
    fields = ("stain", "name", "status", "width", "height", "mpp_x", "vendor")
    readonly_fields = ("name", "status", "width", "height", "vendor")
    show_change_link = True


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ("case_id", "age", "clinical_stage", "hr_status", "her2_ihc", "pcr", "status", "is_demo")
    list_filter = ("status", "clinical_stage", "hr_status", "her2_ihc", "pcr", "is_demo")
    search_fields = ("case_id", "regimen", "notes")
    inlines = [SlideInline]


@admin.register(Slide)
class SlideAdmin(admin.ModelAdmin):
    list_display = ("id", "case", "stain", "name", "status", "vendor", "width", "height", "mpp_x", "mpp_source")
    list_filter = ("stain", "status", "vendor", "mpp_source", "converted")
    search_fields = ("name", "case__case_id", "checksum")
    readonly_fields = ("checksum", "source_path", "file_path", "vendor", "width", "height", "level_count",
                       "level_dimensions", "level_downsamples", "properties", "converted", "created_at")


@admin.register(SlideAlignment)
class SlideAlignmentAdmin(admin.ModelAdmin):
    list_display = ("case", "fixed", "moving", "offset_x", "offset_y", "rotation", "scale", "updated_by", "updated_at")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only."""

    list_display = ("at", "user", "action", "case", "slide")
    list_filter = ("action", "user")
    search_fields = ("action", "case__case_id")
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
