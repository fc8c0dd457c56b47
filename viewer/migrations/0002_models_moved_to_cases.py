"""Case, Slide, SlideAlignment and AuditEvent now belong to the cases app (state only).

The tables stay (cases' models name them with Meta.db_table); every foreign key to them was
moved to cases.* first (the dependencies below), so the viewer app's state can drop them.
"""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("viewer", "0001_initial"),
        ("cases", "0001_initial"),
        ("analysis", "0004_case_and_slide_in_cases_app"),
        ("review", "0003_case_and_slide_in_cases_app"),
        ("board", "0002_case_and_slide_in_cases_app"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="AuditEvent"),
                migrations.DeleteModel(name="SlideAlignment"),
                migrations.DeleteModel(name="Slide"),
                migrations.DeleteModel(name="Case"),
            ],
        ),
    ]
