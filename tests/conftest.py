"""Shared test fixtures: the base tokenizer and a tiny random model that uses the base model's
tokenizer and chat template (training tests run in seconds on it). Helpers: agentune.testing."""
import pytest


@pytest.fixture(scope="session")
def base_tokenizer():
    from agentune.model import load_tokenizer
    return load_tokenizer("")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, base_tokenizer):
    """A 2-layer Llama with random weights, saved with the base model's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(base_tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=base_tokenizer.bos_token_id, eos_token_id=base_tokenizer.eos_token_id)
    out = tmp_path_factory.mktemp("tiny_model")
    LlamaForCausalLM(config).save_pretrained(out)
    base_tokenizer.save_pretrained(out)
    return str(out)
