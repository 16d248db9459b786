"""Rendering results from the store: leaderboard, claims, figures."""
