"""WTForms for the pages; flask-wtf adds the CSRF token to each."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, EqualTo, Length
from wtforms.widgets import CheckboxInput, ListWidget

from app.inputs import (
    DEFAULT_KEY_SCOPES,
    KEY_EXPIRY_DAYS,
    KEY_NAME_MAX,
    KEY_SCOPES,
    PASSWORD_MAX,
    PASSWORD_MIN,
    ROTATE_GRACE_DEFAULT,
    USERNAME_MAX,
    WORKSPACE_ID_MAX,
    stripped,
)

EXPIRY_OPTIONS = [
    SelectChoice(str(days) if days else "never", f"{days} days" if days else "Never") for days in KEY_EXPIRY_DAYS
]


class LoginForm(FlaskForm):
    username = StringField("Username", filters=[stripped], validators=[DataRequired(), Length(max=USERNAME_MAX)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    next = HiddenField()


class SetupForm(FlaskForm):
    token = HiddenField(validators=[DataRequired()])
    username = StringField("Admin username", filters=[stripped], validators=[DataRequired(), Length(max=USERNAME_MAX)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)])
    confirm = PasswordField("Repeat password", validators=[EqualTo("password", "The passwords do not match")])


# What a key may do, as the page words it; the values are the API's scope names.
SCOPE_LABELS = {
    "ask": "Ask questions",
    "workspaces:read": "List workspaces",
    "workspaces:write": "Upload and replace workspaces",
}
# The grace of a rotation: how long the previous secret keeps working. One day unless chosen otherwise.
GRACE_OPTIONS = [
    SelectChoice("0", "None: the old secret stops now"),
    SelectChoice("3600", "1 hour"),
    SelectChoice("86400", "1 day"),
    SelectChoice("604800", "7 days"),
]


class CheckboxesField(SelectMultipleField):
    """A list of checkboxes. Any value passes the form: the domain rules (accounts) judge it and say why."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, validate_choice=False, **kwargs)


class NewKeyForm(FlaskForm):
    name = StringField("Key name", filters=[stripped], validators=[DataRequired(), Length(max=KEY_NAME_MAX)])
    expiry = SelectField("Expires", choices=EXPIRY_OPTIONS, default="never")
    scopes = CheckboxesField(
        "What it may do",
        choices=[SelectChoice(s, SCOPE_LABELS[s]) for s in KEY_SCOPES],
        default=list(DEFAULT_KEY_SCOPES),
    )
    workspace_access = RadioField(
        "Workspaces",
        choices=[SelectChoice("all", "All workspaces, including future ones"), SelectChoice("chosen", "Only these:")],
        default="all",
        validate_choice=False,
    )
    workspaces = CheckboxesField("Chosen workspaces", choices=[])
    rate_limit = StringField("Requests per hour", filters=[stripped])
    allowed_ips = TextAreaField("Allowed addresses", filters=[stripped])


class RotateKeyForm(FlaskForm):
    key_id = HiddenField(validators=[DataRequired()])
    grace_seconds = SelectField("Old secret works for", choices=GRACE_OPTIONS, default=str(ROTATE_GRACE_DEFAULT))


class RevokeKeyForm(FlaskForm):
    key_id = HiddenField(validators=[DataRequired()])


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField(
        "New password", validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)]
    )
    confirm = PasswordField("Repeat new password", validators=[EqualTo("new_password", "The passwords do not match")])


class AddUserForm(FlaskForm):
    username = StringField("Username", filters=[stripped], validators=[DataRequired(), Length(max=USERNAME_MAX)])
    password = PasswordField(
        "Initial password", validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)]
    )
    admin = BooleanField("Administrator")


class UserActionForm(FlaskForm):
    username = HiddenField(validators=[DataRequired()])


class ResetPasswordForm(FlaskForm):
    username = HiddenField(validators=[DataRequired()])
    password = PasswordField("New password", validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)])


class UploadWorkspaceForm(FlaskForm):
    workspace_id = StringField(
        "Workspace id", filters=[stripped], validators=[DataRequired(), Length(max=WORKSPACE_ID_MAX)]
    )
    archive = FileField("Archive (.zip or .tar.gz)", validators=[FileRequired("Choose a .zip or .tar.gz file")])
    replace = BooleanField("Replace it if it exists (admins only)")


class DeleteWorkspaceForm(FlaskForm):
    workspace_id = HiddenField(validators=[DataRequired()])


class IndexWorkspaceForm(FlaskForm):
    workspace_id = HiddenField(validators=[DataRequired()])
