from django.contrib.auth import login
from django.shortcuts import redirect, render

from .forms import SignUpForm


def sign_up(request):
    """Create an account and log in: the user is synced to Fyno after the commit."""
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("home")
    return render(request, "accounts/signup.html", {"form": form})
