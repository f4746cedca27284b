"""Adapters on a frozen encoder: configs, our bottleneck module, peft kinds, model building."""
