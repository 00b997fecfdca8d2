from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from tests.testapp.models import Document


@csrf_exempt
def upload(request: HttpRequest) -> JsonResponse:
    """Save the uploaded file on a new Document and report where it went."""
    uploaded = request.FILES["file"]
    temporary_path = getattr(uploaded, "temporary_file_path", lambda: None)()
    document = Document.objects.create(file=uploaded)
    return JsonResponse(
        {"id": document.pk, "name": document.file.name, "temporary_path": temporary_path}
    )
