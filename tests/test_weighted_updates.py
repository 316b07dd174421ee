"""--drats-weighted-updates: off, drats_sac.py's update is uniform_sac.py's, bit for bit; on, each task's critic,
actor and temperature losses are weighted by K * q_i, as an explicitly weighted loss computes them."""

import copy

import torch
from test_long_runs import small_learner


def test_off_the_update_is_uniform_sacs():
    uniform, drats = small_learner("uniform_sac"), small_learner("drats_sac")
    for _ in range(3):
        torch.manual_seed(5)
        logs_uniform = uniform[-1]()
        torch.manual_seed(5)
        logs_drats = drats[-1]()
        assert torch.equal(logs_uniform, logs_drats)
    for module in range(3):  # actor, critic, target critic
        assert all(
            torch.equal(a, b) for a, b in zip(uniform[module].parameters(), drats[module].parameters(), strict=True)
        )


def test_on_each_tasks_losses_weigh_k_times_its_probability():
    actor, critic, target_critic, log_alpha, optimizers, rb, learn = small_learner(
        "drats_sac", "--drats-weighted-updates"
    )
    weight = torch.tensor([1.6, 0.4])  # K * q for q = (0.8, 0.2)
    learn.task_weight.copy_(weight)
    actor_before, log_alpha_before = copy.deepcopy(actor), log_alpha.detach().clone()
    critic_before, target_before = copy.deepcopy(critic), copy.deepcopy(target_critic)
    torch.manual_seed(5)
    logs = learn()

    # the same batch and noise, the losses written out by hand with the weights of each sample's task
    torch.manual_seed(5)
    obs, actions, rewards, next_obs, terminations, task = rb.sample(64)
    w = weight[task.flatten()]
    alpha = log_alpha_before.exp()[task.flatten()]
    with torch.no_grad():
        next_actions, next_log_prob = actor_before.sample(next_obs, task)
        next_q = target_before(next_obs, next_actions, task).min(0).values
        q_target = (rewards + 0.99 * (1 - terminations) * (next_q - alpha * next_log_prob)).clamp(-5000, 5000)
        q = critic_before(obs, actions, task).clamp(-5000, 5000)
        critic_loss = ((q - q_target).pow(2) * w).mean()
        pi, log_prob = actor_before.sample(obs, task)
        q_pi = critic(obs, pi, task).min(0).values  # the critic after its update, as the actor's loss sees it
        actor_loss = ((alpha * log_prob - q_pi) * w).mean()
        alpha_loss = (-log_alpha_before[task.flatten()] * (log_prob - 4.0) * w).mean()
    torch.testing.assert_close(logs[:3], torch.stack([critic_loss, actor_loss, alpha_loss]))
    unweighted = ((q - q_target).pow(2)).mean()
    assert not torch.isclose(logs[0], unweighted)  # the weights made a difference
