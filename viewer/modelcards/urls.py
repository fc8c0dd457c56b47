"""The models page: model versions with their cards; admins activate one."""
from django.urls import path

from viewer.modelcards import views

urlpatterns = [
    path("models/", views.model_list, name="model-list"),
    path("models/<int:pk>/", views.model_detail, name="model-detail"),
    path("models/<int:pk>/activate/", views.model_activate_view, name="model-activate"),
]
