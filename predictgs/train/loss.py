"""The training objective: distortion + lambda x rate + the method's other terms.

    loss = (1 - lambda_dssim) L1 + lambda_dssim (1 - SSIM) + sum_t term_t,   term "rate" weighted by lambda

Methods return their terms unweighted by lambda (``"rate"``: HAC's bits per coded parameter, hash bits
included) and already weighted otherwise (``"scale"``: Scaffold-GS's volume regulariser, ``"mask"``:
HAC's mask penalty), as CompressAI's ``RateDistortionLoss`` keeps the rate-distortion weight out of the
model. The terms are added in the order the method returns them.
"""

from __future__ import annotations

from torch import Tensor

from ..metrics import ssim_torch

RATE = "rate"


class RateDistortionLoss:
    def __init__(self, lmbda: float | None, lambda_dssim: float = 0.2):
        self.lmbda = lmbda
        self.lambda_dssim = lambda_dssim

    def distortion(self, image: Tensor, target: Tensor) -> Tensor:
        l1 = (image - target).abs().mean()
        return (1.0 - self.lambda_dssim) * l1 + self.lambda_dssim * (1.0 - ssim_torch(image, target))

    def __call__(self, image: Tensor, target: Tensor, terms: dict[str, Tensor]) -> Tensor:
        loss = self.distortion(image, target)
        for name, term in terms.items():
            if name == RATE:
                if self.lmbda is None:
                    raise ValueError("the method returned a rate term but the run has no lambda")
                term = self.lmbda * term
            loss = loss + term
        return loss
