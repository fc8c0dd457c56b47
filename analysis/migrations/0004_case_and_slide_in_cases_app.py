"""Case and Slide moved from the viewer app to the cases app.

State only: the foreign keys now name cases.Case / cases.Slide; the database constraints already point
at the same tables (viewer_case, viewer_slide), so nothing in the database changes.
"""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("analysis", "0003_alter_job_kind_modelversion_casescore_and_more"),
        ("cases", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='job',
                    name='case',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='jobs', to='cases.case'),
                ),
                migrations.AlterField(
                    model_name='job',
                    name='slide',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='jobs', to='cases.slide'),
                ),
                migrations.AlterField(
                    model_name='analysisrun',
                    name='slide',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='runs', to='cases.slide'),
                ),
                migrations.AlterField(
                    model_name='slidefeatures',
                    name='slide',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='features', to='cases.slide'),
                ),
                migrations.AlterField(
                    model_name='casescore',
                    name='case',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='scores', to='cases.case'),
                ),
            ],
        ),
    ]
