"""nanoGPT-style configuration: plain module-level constants overridable as --name=value.

A stage script defines its settings as plain constants at the top, then calls
``config = configure(globals())``. Every override must name an existing setting and parse
as the setting's type; anything else is an error that says what is wrong. A script with named
blocks of settings passes them as ``configure(globals(), presets=PRESETS)``: --preset=NAME
applies its block first, the other overrides on top. The script then checks the values
(``check``) before it writes anything.
"""
import ast
import json
import os
import re
import sys

SETTING_TYPES = (bool, int, float, str, list, tuple, dict, type(None))


class ConfigError(SystemExit):
    def __init__(self, message):
        super().__init__(f"config error: {message}")


def _parse(name, raw, default):
    if isinstance(default, bool):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{name}={raw}: expected a boolean (True/False)")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"--{name}={raw}: expected an integer (default {default!r})") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"--{name}={raw}: expected a number (default {default!r})") from None
    if isinstance(default, str):
        return raw
    if default is None:  # optional setting: a literal if it parses as one, else the string
        if raw == "None":
            return None
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
    # list / tuple / dict: a Python or JSON literal; a comma list is accepted for sequences
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        if isinstance(default, (list, tuple)):
            value = [v for v in raw.split(",") if v]
        else:
            raise ConfigError(f"--{name}={raw}: expected a {type(default).__name__} literal") from None
    if isinstance(default, (list, tuple)) and isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, (list, tuple) if isinstance(default, (list, tuple)) else type(default)):
        raise ConfigError(f"--{name}={raw}: expected a {type(default).__name__} (default {default!r})")
    return type(default)(value)


def settings_of(namespace):
    """The settings of a stage script: its lowercase module-level constants of plain types."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k.islower() and isinstance(v, SETTING_TYPES)}


def setting_comments(path, names):
    """{name: its comment} from a stage script's source: the comment on the setting's line plus
    the comment-only lines indented under it (how the settings blocks continue a comment), or,
    without one, the comment lines right above it (section headers `# ---` aside)."""
    comments, current, above = {}, None, []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return comments
    for line in lines:
        match = re.match(r"^([a-z_][a-z0-9_]*)\s*=([^#]*)(?:#\s?(.*))?$", line)
        if match and match.group(1) in names:
            current = match.group(1)
            comments[current] = (match.group(3) or " ".join(above)).strip()
            above = []
        elif current and re.match(r"^\s+#", line):
            comments[current] += " " + line.strip().lstrip("#").strip()
        elif line.startswith("#") and not line.startswith("# ---"):
            above.append(line.lstrip("#").strip())
            current = None
        else:
            current, above = None, []
    return comments


def print_help(namespace, settings, presets=None):
    """The script's usage docstring, then every setting with its default and comment (and the presets)."""
    print((namespace.get("__doc__") or "").strip())
    comments = setting_comments(namespace.get("__file__", ""), settings)
    print("\nsettings (override as --name=value):")
    width = max(map(len, settings), default=0)
    for name, value in settings.items():
        comment = f"  # {comments[name]}" if comments.get(name) else ""
        print(f"  --{name:<{width}} = {value!r}{comment}")
    if presets:
        print("\npresets (--preset=NAME sets these first; other --name=value overrides win):")
        for name, values in presets.items():
            print(f"  {name}: " + (", ".join(f"{k}={v!r}" for k, v in values.items()) or "the defaults above"))


def configure(namespace, argv=None, show=True, presets=None):
    """Apply --name=value overrides from argv to the settings in namespace; return them.
    presets: {name: {setting: value}} chosen by the `preset` setting, applied before the overrides.
    --help (or -h) prints the script's docstring and its settings with their comments, and exits."""
    argv = sys.argv[1:] if argv is None else argv
    settings = settings_of(namespace)
    if any(arg in ("--help", "-h") for arg in argv):
        print_help(namespace, settings, presets)
        raise SystemExit(0)
    overrides = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            if arg.startswith("--") and arg[2:] in settings and isinstance(settings[arg[2:]], bool):
                arg = arg + "=True"  # a bare --flag sets a boolean
            elif arg.startswith("--local_rank") or arg.startswith("--local-rank"):
                continue  # passed by the deepspeed launcher; the env var LOCAL_RANK carries it too
            else:
                raise ConfigError(f"unexpected argument {arg!r}; use --name=value")
        name, raw = arg[2:].split("=", 1)
        name = name.replace("-", "_")
        if name in ("local_rank",):
            continue
        if name not in settings:
            close = [k for k in settings if k.startswith(name[:3])]
            hint = f" (did you mean {', '.join('--' + c for c in close)}?)" if close else ""
            raise ConfigError(f"unknown setting --{name}{hint}; known: {', '.join(sorted(settings))}")
        overrides[name] = _parse(name, raw, settings[name])
    if presets:
        chosen = overrides.get("preset", settings["preset"])
        if chosen not in presets:
            raise ConfigError(f"unknown --preset={chosen}; known: {', '.join(presets)}")
        stray = [k for k in presets[chosen] if k not in settings]
        if stray:
            raise ConfigError(f"preset {chosen!r} sets {', '.join(stray)}, which are not settings")
        settings.update(presets[chosen])
    settings.update(overrides)
    namespace.update(settings)
    if show and int(os.environ.get("RANK", "0")) == 0:
        width = max(map(len, settings), default=0)
        print("config:")
        for k, v in settings.items():
            print(f"  {k:<{width}} = {v!r}")
    return settings


def check(ok, message):
    """A stage's check of its settings, before it writes anything: exit with 'config error: message'."""
    if not ok:
        raise ConfigError(message)


def save_config(settings, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(settings, f, indent=2, default=str)
        f.write("\n")
