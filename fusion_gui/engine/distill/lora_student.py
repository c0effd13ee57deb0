"""A student trained as a LoRA (peft) on every linear layer but the output layer, merged at the end."""

from __future__ import annotations


def as_lora(model, rank: int, alpha: float):
    """The model wrapped by peft with LoRA adapters of `rank`; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear",
                                            lora_dropout=0.0, task_type="CAUSAL_LM"))


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_parameters(model, rank: int) -> int:
    """What as_lora would train, counted on a model (a meta-device one will do): (in + out) x rank per
    linear layer other than the output layer."""
    import torch

    head = model.get_output_embeddings()
    return sum((m.in_features + m.out_features) * rank for m in model.modules()
               if isinstance(m, torch.nn.Linear) and m is not head)
