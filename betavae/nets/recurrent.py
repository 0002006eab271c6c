"""Recurrent autoencoder: an image read row by row as a sequence."""

from __future__ import annotations

import torch
from torch import nn

from betavae.nets.checks import check_positive


class RecurrentNet(nn.Module):
    """LSTM autoencoder over image rows: the encoder LSTM reads the H rows (each C·W values) and its
    last hidden state is mapped to the code; the decoder repeats the code once per row, runs an LSTM
    over that sequence, and a dense layer maps each step to a row of pixels.

    Args:
        in_channels: Image channels.
        image_size: Image height and width (the sequence length and the row width).
        hidden_size: LSTM width (the textbook: 100).
        latent_dim: Size of the code (the textbook: 30).
    """

    def __init__(self, in_channels: int, image_size: int, hidden_size: int = 100, latent_dim: int = 30) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, image_size=image_size, hidden_size=hidden_size, latent_dim=latent_dim)
        self.image_shape = (in_channels, image_size, image_size)
        row = in_channels * image_size
        self.encoder = nn.LSTM(row, hidden_size, batch_first=True)
        self.to_code = nn.Linear(hidden_size, latent_dim)
        self.decoder = nn.LSTM(latent_dim, hidden_size, batch_first=True)
        self.to_row = nn.Linear(hidden_size, row)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # (B, H, C*W): one step per image row
        _, (last, _) = self.encoder(rows)  # last: (1, B, hidden)
        return self.to_code(last[-1])  # (B, D)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        steps = code.unsqueeze(1).expand(-1, h, -1)  # (B, H, D): the code repeated for every row
        out, _ = self.decoder(steps.contiguous())  # (B, H, hidden)
        rows = self.to_row(out)  # (B, H, C*W)
        return rows.view(-1, h, c, w).permute(0, 2, 1, 3)  # (B, C, H, W)
