"""Case and Slide moved from the viewer app to the cases app.

State only: the foreign keys now name cases.Case / cases.Slide; the database constraints already point
at the same tables (viewer_case, viewer_slide), so nothing in the database changes.
"""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("board", "0001_initial"),
        ("cases", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='boarditem',
                    name='case',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='cases.case'),
                ),
                migrations.AlterField(
                    model_name='boardrecord',
                    name='case',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='cases.case'),
                ),
                migrations.AlterField(
                    model_name='boardrecord',
                    name='slide',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='cases.slide'),
                ),
            ],
        ),
    ]
