"""WTForms for the pages; flask-wtf adds the CSRF token to each."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from app.users.store import PASSWORD_MAX, PASSWORD_MIN

EXPIRY_OPTIONS = [
    SelectChoice("never", "Never"),
    SelectChoice("30", "30 days"),
    SelectChoice("90", "90 days"),
    SelectChoice("365", "365 days"),
]


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    next = HiddenField()


class SetupForm(FlaskForm):
    token = HiddenField(validators=[DataRequired()])
    username = StringField("Admin username", validators=[DataRequired(), Length(max=32)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)])
    confirm = PasswordField("Repeat password", validators=[EqualTo("password", "The passwords do not match")])


class NewKeyForm(FlaskForm):
    name = StringField("Key name", validators=[DataRequired(), Length(max=100)])
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
    username = StringField("Username", validators=[DataRequired(), Length(max=32)])
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
    workspace_id = StringField("Workspace id", validators=[DataRequired(), Length(max=64)])
    archive = FileField("Archive (.zip or .tar.gz)", validators=[FileRequired("Choose a .zip or .tar.gz file")])
    replace = BooleanField("Replace it if it exists (admins only)")


class DeleteWorkspaceForm(FlaskForm):
    workspace_id = HiddenField(validators=[DataRequired()])


class IndexWorkspaceForm(FlaskForm):
    workspace_id = HiddenField(validators=[DataRequired()])
