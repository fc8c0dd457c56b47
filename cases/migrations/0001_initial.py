"""Adopt the viewer app's Case, Slide, SlideAlignment and AuditEvent (state only).

The tables keep their names (viewer_case, ...): nothing in the database changes. On a new
database viewer's 0001 creates them first; on an existing one they are already there.
"""
import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("viewer", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Case',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('case_id', models.CharField(max_length=64, unique=True, validators=[django.core.validators.RegexValidator('^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', "Letters, digits, '.', '_' and '-' only (a pseudonymous id, never a patient name).")], verbose_name='case id')),
                        ('age', models.PositiveSmallIntegerField(blank=True, null=True, validators=[django.core.validators.MaxValueValidator(120)])),
                        ('clinical_t', models.CharField(blank=True, choices=[('T1', 'T1'), ('T2', 'T2'), ('T3', 'T3'), ('T4', 'T4')], max_length=2, verbose_name='clinical T')),
                        ('clinical_n', models.CharField(blank=True, choices=[('N0', 'N0'), ('N1', 'N1'), ('N2', 'N2'), ('N3', 'N3')], max_length=2, verbose_name='clinical N')),
                        ('clinical_stage', models.CharField(blank=True, choices=[('I', 'I'), ('II', 'II'), ('III', 'III')], max_length=3)),
                        ('er_status', models.CharField(blank=True, choices=[('positive', 'Positive'), ('negative', 'Negative')], max_length=8, verbose_name='ER status')),
                        ('pr_status', models.CharField(blank=True, choices=[('positive', 'Positive'), ('negative', 'Negative')], max_length=8, verbose_name='PR status')),
                        ('hr_status', models.CharField(blank=True, choices=[('positive', 'Positive'), ('negative', 'Negative')], max_length=8, verbose_name='HR status')),
                        ('her2_ihc', models.CharField(blank=True, choices=[('0', '0'), ('1+', '1+'), ('2+', '2+'), ('3+', '3+')], max_length=2, verbose_name='HER2 IHC score')),
                        ('grade', models.PositiveSmallIntegerField(blank=True, null=True, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(3)])),
                        ('regimen', models.CharField(blank=True, max_length=200)),
                        ('pcr', models.BooleanField(blank=True, help_text='Outcome when known: pathologic complete response.', null=True, verbose_name='pCR')),
                        ('status', models.CharField(choices=[('new', 'New'), ('analysing', 'Analysing'), ('ready', 'Ready for review'), ('in_review', 'In review'), ('reviewed', 'Reviewed'), ('discussed', 'Discussed at tumour board')], db_index=True, default='new', max_length=16)),
                        ('is_demo', models.BooleanField(default=False, help_text='Synthetic demo data, not a patient.')),
                        ('notes', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'viewer_case',
                        'ordering': ['case_id'],
                    },
                ),
                migrations.CreateModel(
                    name='Slide',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('stain', models.CharField(choices=[('he', 'H&E'), ('ihc', 'HER2 IHC')], max_length=4)),
                        ('name', models.CharField(help_text='Original file name.', max_length=255)),
                        ('source_path', models.CharField(help_text='Where the file was imported from.', max_length=1024)),
                        ('file_path', models.CharField(blank=True, help_text='The pyramidal file served (a converted TIFF for plain images).', max_length=1024)),
                        ('checksum', models.CharField(blank=True, db_index=True, max_length=64, verbose_name='SHA-256')),
                        ('vendor', models.CharField(blank=True, max_length=32)),
                        ('width', models.PositiveIntegerField(default=0)),
                        ('height', models.PositiveIntegerField(default=0)),
                        ('level_count', models.PositiveSmallIntegerField(default=0)),
                        ('level_dimensions', models.JSONField(blank=True, default=list)),
                        ('level_downsamples', models.JSONField(blank=True, default=list)),
                        ('mpp_x', models.FloatField(blank=True, null=True, verbose_name='µm per pixel (x)')),
                        ('mpp_y', models.FloatField(blank=True, null=True, verbose_name='µm per pixel (y)')),
                        ('mpp_source', models.CharField(choices=[('metadata', 'Slide metadata'), ('user', 'Set by a user'), ('unknown', 'Unknown')], default='unknown', max_length=8)),
                        ('objective_power', models.FloatField(blank=True, null=True)),
                        ('converted', models.BooleanField(default=False, help_text='Converted from a plain image on import.')),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('converting', 'Converting'), ('ready', 'Ready'), ('failed', 'Failed')], db_index=True, default='pending', max_length=12)),
                        ('error', models.TextField(blank=True)),
                        ('properties', models.JSONField(blank=True, default=dict)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('case', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='slides', to='cases.case')),
                        ('imported_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'viewer_slide',
                        'ordering': ['case', 'stain', 'id'],
                    },
                ),
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('action', models.CharField(db_index=True, max_length=64)),
                        ('detail', models.JSONField(blank=True, default=dict)),
                        ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                        ('case', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='cases.case')),
                        ('slide', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='cases.slide')),
                    ],
                    options={
                        'db_table': 'viewer_auditevent',
                        'ordering': ['-at'],
                    },
                ),
                migrations.CreateModel(
                    name='SlideAlignment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('offset_x', models.FloatField(default=0.0)),
                        ('offset_y', models.FloatField(default=0.0)),
                        ('rotation', models.FloatField(default=0.0)),
                        ('scale', models.FloatField(default=1.0, validators=[django.core.validators.MinValueValidator(0.001), django.core.validators.MaxValueValidator(1000.0)])),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('case', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alignments', to='cases.case')),
                        ('fixed', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='cases.slide')),
                        ('moving', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='cases.slide')),
                        ('updated_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'viewer_slidealignment',
                        'constraints': [models.UniqueConstraint(fields=('fixed', 'moving'), name='unique_alignment_pair')],
                    },
                ),
            ],
        ),
    ]
