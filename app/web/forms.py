"""WTForms for the pages; flask-wtf adds the CSRF token to each."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from app.inputs import (
    KEY_EXPIRY_DAYS,
    KEY_NAME_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
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


class NewKeyForm(FlaskForm):
    name = StringField("Key name", filters=[stripped], validators=[DataRequired(), Length(max=KEY_NAME_MAX)])
    expiry = SelectField("Expires", choices=EXPIRY_OPTIONS, default="never")


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
