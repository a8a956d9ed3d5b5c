import pytest
import torch

from lnl_cli.algorithms.grad_reverse import grad_reverse


@pytest.mark.parametrize("scale", [0.1, 1.0, 2.5])
def test_forward_is_identity_and_backward_is_reversed_and_scaled(scale):
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, 3, dtype=torch.float64)
    y = grad_reverse(x, scale)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    assert torch.allclose(x.grad, -scale * weights)


def test_reversal_matches_finite_differences_of_the_negated_loss():
    """d/dx of the loss through the layer equals -scale times the numeric derivative of the loss."""
    torch.manual_seed(1)
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    scale = 0.1

    def loss_fn(t):
        return (t.sin() * t).sum()

    loss_fn(grad_reverse(x, scale)).backward()
    eps = 1e-6
    numeric = torch.zeros(5, dtype=torch.float64)
    for i in range(5):
        step = torch.zeros(5, dtype=torch.float64)
        step[i] = eps
        numeric[i] = (loss_fn(x.detach() + step) - loss_fn(x.detach() - step)) / (2 * eps)
    assert torch.allclose(x.grad, -scale * numeric, atol=1e-7)


def test_parameters_before_the_layer_climb_the_loss_while_after_it_descend():
    torch.manual_seed(2)
    before = torch.nn.Linear(3, 3)
    after = torch.nn.Linear(3, 1)
    x = torch.randn(8, 3)
    loss = after(grad_reverse(before(x), 1.0)).pow(2).mean()
    loss.backward()
    plain_before = torch.nn.Linear(3, 3)
    plain_before.load_state_dict(before.state_dict())
    plain_after = torch.nn.Linear(3, 1)
    plain_after.load_state_dict(after.state_dict())
    plain_after(plain_before(x)).pow(2).mean().backward()
    assert torch.allclose(before.weight.grad, -plain_before.weight.grad)
    assert torch.allclose(after.weight.grad, plain_after.weight.grad)
