"""Rank series (papers 81–88): a small word-level GPT stand-in for the series' "PhotonicGPT", the
K-basis adapter ΔW = U_K diag(α) V_Kᵀ, full-gradient capture, and one script per paper."""
