from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from viewer.api import views

router = DefaultRouter()
router.register("cases", views.CaseViewSet, basename="api-case")
router.register("slides", views.SlideViewSet, basename="api-slide")
router.register("jobs", views.JobViewSet, basename="api-job")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("health/", views.health, name="api-health"),
    path("cases/<int:pk>/alignment/", views.case_alignment, name="api-case-alignment"),
    path("", include(router.urls)),
]
