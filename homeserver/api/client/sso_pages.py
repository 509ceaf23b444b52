"""The HTML pages of single sign-on: error, confirmation, username picker,
provider chooser.

Rendered with Jinja2 with autoescaping on: everything shown (a provider's
name, the client's host, the user's display name) is escaped. The pages are
plain forms and links, no script (but the one line that tells a client its
fallback page is done, allowed by its hash), and say so in their Content-Security-Policy;
they may not be framed (a framed confirmation page could be clickjacked).
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from typing import Any

# the spec's fallback protocol: tell the client that opened the page
DONE_SCRIPT = ('if (window.onAuthDone) { window.onAuthDone(); } else if (window.opener '
               '&& window.opener.postMessage) { window.opener.postMessage("authDone", "*"); }')
DONE_SCRIPT_HASH = "sha256-" + base64.b64encode(
    hashlib.sha256(DONE_SCRIPT.encode("utf-8")).digest()).decode("ascii")


_LAYOUT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>body{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em}
.error{color:#b00}button,a.button{font-size:1em;padding:.5em 1em}</style>
</head><body><h1>{{ title }}</h1>
{% block body %}{% endblock %}
</body></html>"""

_PAGES = {
    "error": """{% extends "layout" %}{% block body %}
<p class="error">{{ message }}</p>
<p>Return to your app and try signing in again.</p>{% endblock %}""",
    "confirm": """{% extends "layout" %}{% block body %}
<p>You are about to sign in as <strong>{{ user_id }}</strong> to an app at
<strong>{{ client_host }}</strong>.</p>
<p>If you did not start this sign-in from that app, close this page: continuing
would give that app access to your account.</p>
<p><a class="button" id="continue" href="{{ url }}">Continue to {{ client_host }}</a></p>
{% endblock %}""",
    "pick_username": """{% extends "layout" %}{% block body %}
<p>You signed in with {{ idp_name }}{% if display_name %} as {{ display_name }}{% endif %}.
Choose the username of your new account.</p>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
<form method="post" action="">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="{{ suggestion }}" required
 autofocus autocapitalize="none" autocomplete="off">
<button type="submit">Continue</button>
</form>{% endblock %}""",
    "confirm_identity": """{% extends "layout" %}{% block body %}
<p>To {{ description }}, confirm that it is you by signing in with {{ idp_name }}.</p>
<p><a class="button" id="continue" href="{{ url }}">Continue with {{ idp_name }}</a></p>
{% endblock %}""",
    "identity_confirmed": """{% extends "layout" %}{% block body %}
<p>Thank you. You may now close this window and return to your app.</p>
<script>""" + DONE_SCRIPT + """</script>{% endblock %}""",
    "oauth_login": """{% extends "layout" %}{% block body %}
<p><strong>{{ client_name }}</strong> ({{ client_host }}) asks to use your account on
{{ server_name }}.</p>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">
<p><label for="username">Username</label>
<input type="text" id="username" name="username" required autocapitalize="none"></p>
<p><label for="password">Password</label>
<input type="password" id="password" name="password" required></p>
<button type="submit">Sign in and allow</button>
</form>
{% if providers %}<p>Or sign in with:</p><ul>{% for p in providers %}
<li><a href="{{ p.url }}">{{ p.name }}</a></li>{% endfor %}</ul>{% endif %}
{% endblock %}""",
    "enter_code": """{% extends "layout" %}{% block body %}
<p>Enter the code your device shows.</p>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
<form method="get" action="">
<input type="text" id="user_code" name="user_code" required autocapitalize="characters"
 autocomplete="off">
<button type="submit">Continue</button>
</form>{% endblock %}""",
    "device_approved": """{% extends "layout" %}{% block body %}
<p><strong>{{ client_name }}</strong> is now signed in to your account. You may
close this page and return to your device.</p>{% endblock %}""",
    "choose_provider": """{% extends "layout" %}{% block body %}
<ul>{% for p in providers %}
<li><a href="{{ p.url }}">{{ p.name }}</a></li>{% endfor %}
</ul>{% endblock %}""",
}

@cache
def _environment() -> Any:
    # Jinja2 loads with the first page served, not at start
    from jinja2 import DictLoader, Environment

    return Environment(loader=DictLoader({"layout": _LAYOUT, **_PAGES}), autoescape=True)


def render_page(name: str, title: str, **fields: Any) -> bytes:
    return _environment().get_template(name).render(title=title, **fields).encode("utf-8")
