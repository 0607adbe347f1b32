"""Models and their training: building and describing classifiers (`architectures`), the
training loop, inference and the count of optimiser steps (`training`), the one training
rule every trained step follows (`training_rule`) and the shared teacher (`teacher`).
"""
