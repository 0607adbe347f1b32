"""Models and their training: building and describing classifiers (`architectures`), the
one training rule (`training`) and the shared teacher (`teacher`).
"""
