"""Site root: every page and route comes from a capability folder of the viewer app."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from viewer.accounts.views import ThrottledLoginView, admin_login

urlpatterns = [
    # Pages without our <link rel="icon"> (admin, API browser) ask for /favicon.ico: no 404.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
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
