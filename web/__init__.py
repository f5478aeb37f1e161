"""Templates, static files and translations of the web front end."""
from pathlib import Path

ROOT = Path(__file__).parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
I18N = ROOT / "i18n"
