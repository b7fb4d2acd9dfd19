"""Interactive environments. Each module defines one Env subclass; ENVS maps names to them
lazily so that importing one environment never imports another's heavy dependencies."""
import importlib

ENVS = {
    # name: (module, class)
    "os": ("agentune.envs.os_env", "OSEnv"),
    "db": ("agentune.envs.db_env", "DBEnv"),
    "alfworld": ("agentune.envs.alfworld_env", "ALFWorldEnv"),
    "sciworld": ("agentune.envs.sciworld_env", "SciWorldEnv"),
    "miniwob": ("agentune.envs.miniwob_env", "MiniWoBEnv"),
    "hotpotqa": ("agentune.envs.hotpotqa_env", "HotpotQAEnv"),
    "dcg": ("agentune.envs.dcg_env", "DCGEnv"),
    "gsm8k": ("agentune.envs.gsm8k_env", "GSM8KEnv"),
    "humaneval": ("agentune.envs.humaneval_env", "HumanEvalEnv"),
    "mmlu": ("agentune.envs.mmlu_env", "MMLUEnv"),
    "mtbench": ("agentune.envs.mtbench_env", "MTBenchEnv"),
    "mc": ("agentune.envs.mc_env", "MCEnv"),
}


def env_class(name):
    if name not in ENVS:
        raise SystemExit(f"unknown environment {name!r}; known: {', '.join(ENVS)}")
    module, cls = ENVS[name]
    return getattr(importlib.import_module(module), cls)
