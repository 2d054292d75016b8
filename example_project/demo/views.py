"""The demo's pages: a home page, a button that sends a notification, its progress."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from django_fyno import notify
from django_fyno.models import FynoOutbox

TEST_EVENT = "demo_test"


def home(request):
    recent = []
    if request.user.is_authenticated:
        distinct_id = str(request.user.pk)
        recent = FynoOutbox.objects.filter(distinct_id=distinct_id).order_by("-id")[:5]
    return render(request, "demo/home.html", {"recent": recent})


@login_required
@require_POST
def send_test(request):
    """One notify(): an outbox row in this transaction, delivered after the commit."""
    row = notify(TEST_EVENT, to=request.user, data={"name": request.user.get_short_name()})
    return redirect("message", pk=row.pk)


@login_required
def message(request, pk):
    """A notification's outbox row: its state, Fyno's answer, and delivery per channel."""
    row = get_object_or_404(FynoOutbox, pk=pk, distinct_id=str(request.user.pk))
    # The page refreshes itself until a delivery report came back (or the send failed).
    settled = row.state in ("failed", "dead", "cancelled") or bool(row.delivery)
    return render(request, "demo/message.html", {"row": row, "settled": settled})
