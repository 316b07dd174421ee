"""--drats-weighted-updates: off, drats_sac.py's update is uniform_sac.py's, bit for bit; on, each task's critic,
actor and temperature losses are weighted by K * q_i, as an explicitly weighted loss computes them."""

import copy

import torch
from test_long_runs import small_learner


def test_off_the_update_is_uniform_sacs():
    uniform, drats = small_learner("uniform_sac"), small_learner("drats_sac")
    for _ in range(3):
        torch.manual_seed(5)
        losses_uniform = uniform.learn()
        torch.manual_seed(5)
        losses_drats = drats.learn()
        assert torch.equal(losses_uniform, losses_drats)
    for module in ("actor", "critic", "target_critic"):
        uniform_params, drats_params = getattr(uniform, module).parameters(), getattr(drats, module).parameters()
        assert all(torch.equal(a, b) for a, b in zip(uniform_params, drats_params, strict=True))


def test_on_each_tasks_losses_weigh_k_times_its_probability():
    learner = small_learner("drats_sac", "--drats-weighted-updates")
    weight = torch.tensor([1.6, 0.4])  # K * q for q = (0.8, 0.2)
    learner.learn.task_weight.copy_(weight)
    actor_before, log_alpha_before = copy.deepcopy(learner.actor), learner.log_alpha.detach().clone()
    critic_before, target_before = copy.deepcopy(learner.critic), copy.deepcopy(learner.target_critic)
    torch.manual_seed(5)
    losses = learner.learn()

    # the same batch and noise, the losses written out by hand with the weights of each sample's task
    torch.manual_seed(5)
    obs, actions, rewards, next_obs, terminations, task = learner.rb.sample(64)
    w = weight[task.flatten()]
    alpha = log_alpha_before.exp()[task.flatten()]
    with torch.no_grad():
        next_actions, next_log_prob = actor_before.sample(next_obs, task)
        next_q = target_before(next_obs, next_actions, task).min(0).values
        q_target = rewards + 0.99 * (1 - terminations) * (next_q - alpha * next_log_prob)
        q = critic_before(obs, actions, task)
        critic_loss = ((q - q_target).pow(2) * w).mean()
        pi, log_prob = actor_before.sample(obs, task)
        q_pi = learner.critic(obs, pi, task).min(0).values  # the critic after its update, as the actor's loss sees it
        actor_loss = ((alpha * log_prob - q_pi) * w).mean()
        alpha_loss = (-log_alpha_before[task.flatten()] * (log_prob - 4.0) * w).mean()
    torch.testing.assert_close(losses[:3], torch.stack([critic_loss, actor_loss, alpha_loss]))
    unweighted = ((q - q_target).pow(2)).mean()
    assert not torch.isclose(losses[0], unweighted)  # the weights made a difference
