"""Data mixing: environments, trajectories, the Data Mixing Agent and the baselines it is compared to.

Modules (one algorithm each, arrays in and out; torch and lightgbm are imported inside functions):
- ``env``: the :class:`MixingEnv` protocol and the :class:`Trajectory` record;
- ``simulator``: an analytic two-field simulator with known dynamics and its DP optimum;
- ``proxy_env``: an environment that trains a small LM on a corpus's domains stage by stage;
- ``trajectories``: random Dirichlet / random-walk trajectories, stored resumably;
- ``agent``: offline RL with conservative Q-learning (the Data Mixing Agent);
- ``baselines``: uniform, proportional, temperature sampling with an epochs cap;
- ``regmix``: RegMix's config sampler, regression, simulation; proxy-run tables;
- ``doremi``: DoReMi-style excess-loss domain reweighting;
- ``simplex``: lattices and projections on the simplex.
"""
