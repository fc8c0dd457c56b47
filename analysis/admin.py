from django.contrib import admin

from analysis.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "case", "slide", "progress", "attempts", "created_at", "finished_at")
    list_filter = ("kind", "status")
    search_fields = ("case__case_id", "error")
    readonly_fields = [f.name for f in Job._meta.fields]
