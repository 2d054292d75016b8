"""django-fyno: connect a Django project to Fyno."""

__version__ = "0.1.0.dev0"
