"""Where things live: the public datasets (../shared/data by default) and the local cache."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The public datasets (AgentBench tasks, ALFWorld games, GSM8K, general chat). Set
# AGENTUNE_DATA to where scripts/download_data.sh put them; CI and dev machines use ../shared/data.
DATA_ROOT = os.environ.get("AGENTUNE_DATA", os.path.join(os.path.dirname(REPO_ROOT), "shared", "data"))
# Built artefacts that are expensive to recreate: the converted base model, the OS rootfs.
CACHE_DIR = os.environ.get("AGENTUNE_CACHE", os.path.expanduser("~/.cache/agentune"))


def data_path(*parts):
    return os.path.join(DATA_ROOT, *parts)
