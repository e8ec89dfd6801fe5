"""Extension objects, created once and bound to the app in ``create_app`` with ``init_app``."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

login_manager = LoginManager()
csrf = CSRFProtect()
# Limits are declared where they apply (the API blueprint, the login view); none by default.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
