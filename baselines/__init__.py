"""Baselines on the same environment API: MAPPO and IPPO (:mod:`.ppo`), the Stable-Baselines3
cross-check (:mod:`.sb3_ippo`), rule-based control (:mod:`.rule`), the centralised oracle
(:mod:`.oracle`), and ``gradmap-compare`` (:mod:`.compare`) with GradMAP and GradMA trained
through :mod:`gradmap_agents.runs`."""
