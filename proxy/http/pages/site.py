"""The dashboard's blueprint: every page's route (views.py: the public pages and a
user's dashboard; admin.py: the admin's), its templates and static files, and how a
refusal or a missing login is shown."""

from __future__ import annotations

from quart import Blueprint

from . import admin, views


def blueprint() -> Blueprint:
    bp = Blueprint(views.NAME, views.__name__, template_folder="templates", static_folder="static",
                   static_url_path="/static")
    bp.record(views.set_up)
    bp.after_app_request(views.add_security_headers)
    for path, view, methods in (
        ("/signup", views.signup, ["GET", "POST"]), ("/login", views.login, ["GET", "POST"]),
        ("/logout", views.logout, ["POST"]), ("/dashboard", views.dashboard, ["GET"]),
        ("/dashboard/keys", views.keys, ["GET", "POST"]), ("/dashboard/keys/revoke", views.revoke, ["POST"]),
        ("/dashboard/usage", views.usage, ["GET"]), ("/dashboard/ledger", views.ledger, ["GET"]),
        ("/dashboard/topup", views.topup, ["GET", "POST"]), ("/dashboard/transfer", views.transfer, ["GET", "POST"]),
        ("/dashboard/settings", views.settings, ["GET", "POST"]), ("/admin", admin.admin, ["GET"]),
        ("/admin/usage", admin.admin_usage, ["GET"]), ("/admin/credit", admin.admin_credit, ["POST"]),
        ("/admin/disable", admin.admin_disable, ["POST"]),
    ):
        bp.add_url_rule(path, view_func=view, methods=methods)
    bp.register_error_handler(views.LoginNeeded, views.to_login)
    for refused in views.REFUSALS:
        bp.register_error_handler(refused, views.refusal_page)
    bp.register_error_handler(500, views.server_error_page)
    return bp
