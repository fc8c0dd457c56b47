"""The moved models' content types (and so their permissions and admin log entries) follow them.

On a database made before the move, contenttypes holds ('viewer', 'case') and friends; they are
renamed to ('cases', ...) instead of leaving stale rows and making new ones. On a new database
there is nothing to rename (content types are created after migrating).
"""
from django.db import migrations

MODELS = ["case", "slide", "slidealignment", "auditevent"]


def forward(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MODELS:
        if not ContentType.objects.using(db).filter(app_label="cases", model=model).exists():
            ContentType.objects.using(db).filter(app_label="viewer", model=model).update(app_label="cases")


def backward(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MODELS:
        if not ContentType.objects.using(db).filter(app_label="viewer", model=model).exists():
            ContentType.objects.using(db).filter(app_label="cases", model=model).update(app_label="viewer")


class Migration(migrations.Migration):

    dependencies = [
        ("cases", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forward, backward)]
