"""The networks of the shipped model plugins (``p4net``, ``p4net-plus``, ``seed-cnn``), in one module
with torch: the plugin modules import it only when a model is built, so loading the plugins (every
command, ``mnistp4 segment`` included) does not import torch."""

from __future__ import annotations

from torch import nn

from mnistp4.stages.models.common import conv_bn_relu


class P4Net(nn.Module):
    def __init__(self, widths=(12, 32, 64), dropout: float = 0.1):
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            *conv_bn_relu(1, a, 1),
            nn.MaxPool2d(2),
            *conv_bn_relu(a, b, 0),
            nn.MaxPool2d(2),
            *conv_bn_relu(b, c, 0),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * 4 * 4, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class P4NetPlus(nn.Module):
    def __init__(self, widths=(16, 32, 64), dropout: float = 0.1):
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            *conv_bn_relu(1, a, 1),
            nn.MaxPool2d(2),
            *conv_bn_relu(a, b, 1),
            *conv_bn_relu(b, b, 0),
            nn.MaxPool2d(2),
            *conv_bn_relu(b, c, 0),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * 4 * 4, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class SeedCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
