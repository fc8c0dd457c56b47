from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from viewer.views import models as model_pages
from viewer.views import pages, tiles
from viewer.views.auth import ThrottledLoginView

urlpatterns = [
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("viewer.review.api_urls")),
    path("api/", include("viewer.board.api_urls")),
    path("", include("viewer.overlay_urls")),
    path("api/", include("viewer.api.urls")),
    path("", include("viewer.review.urls")),
    path("", include("viewer.board.urls")),
    path("", pages.worklist, name="worklist"),
    path("cases/<str:case_id>/", pages.case_detail, name="case-detail"),
    path("models/", model_pages.model_list, name="model-list"),
    path("models/<int:pk>/", model_pages.model_detail, name="model-detail"),
    path("models/<int:pk>/activate/", model_pages.model_activate_view, name="model-activate"),
    path("cases/<str:case_id>/upload/", pages.slide_upload_view, name="slide-upload"),
    path("slides/<int:slide_id>/mpp/", pages.slide_mpp_view, name="slide-mpp"),
    path("slides/<int:slide_id>/analyze/", pages.slide_analyze_view, name="slide-analyze"),
    # Pixels: answered by the ASGI fast path (viewer.tile_app) in the server; these views
    # serve the same URLs elsewhere (test client) and give reverse() its names.
    path("slides/<int:slide_id>.dzi", tiles.slide_dzi, name="slide-dzi"),
    path("slides/<int:slide_id>_files/<int:level>/<int:col>_<int:row>.jpeg", tiles.slide_tile, name="slide-tile"),
    path("slides/<int:slide_id>/thumbnail.jpg", tiles.slide_thumbnail, name="slide-thumbnail"),
]

admin.site.site_header = "HER2-LADDER administration"
