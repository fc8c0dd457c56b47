"""Site root: every page and route comes from a capability folder of the viewer app."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from viewer.accounts.views import ThrottledLoginView, admin_login

urlpatterns = [
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/login/", admin_login),  # the admin's page behind the same login throttle
    path("admin/", admin.site.urls),
    path("api/", include("viewer.api.urls")),
    path("", include("viewer.overlays.urls")),
    path("", include("viewer.review.urls")),
    path("", include("viewer.board.urls")),
    path("", include("viewer.modelcards.urls")),
    path("", include("viewer.cases.urls")),
    path("", include("viewer.tiles.urls")),
]

admin.site.site_header = "HER2-LADDER administration"
handler404 = "viewer.api.errors.not_found"
