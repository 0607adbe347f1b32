"""Statistics on saved predictions and latency samples: pure functions, no I/O.

One responsibility per module:
  auc          the one AUC: per class, macro with its reasons, and per bootstrap resample
  bootstrap    resampling weights (stratified, patient-level) and percentile intervals
  delong       DeLong's test for correlated ROC curves (Sun & Xu 2014)
  threshold    operating points, accuracy and the other metrics read at a threshold
  calibration  ECE and Brier score
  quality      the row's quality columns, all of the above together
  latency      per-process and across-process latency statistics, latency-ratio intervals

The runner's entry points: quality.quality_row and latency.latency_row.
"""
