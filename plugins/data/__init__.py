"""Data stage: dataset sources (MNIST, Semeion, the custom digits of a data dir), the data dir's
``manifest.csv`` and the project digit normalizer."""
