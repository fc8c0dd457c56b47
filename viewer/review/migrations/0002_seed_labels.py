from django.db import migrations

# Okabe-Ito colours (colour-blind safe).
SEED = [
    ("misclassified cells", "#E69F00", 10),
    ("missed tumour region", "#D55E00", 20),
    ("HER2 grade wrong", "#CC79A7", 30),
    ("artefact", "#56B4E9", 40),
]


def seed(apps, schema_editor):
    AnnotationLabel = apps.get_model("review", "AnnotationLabel")
    for name, color, order in SEED:
        AnnotationLabel.objects.get_or_create(name=name, defaults={"color": color, "order": order})


class Migration(migrations.Migration):
    dependencies = [("review", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
