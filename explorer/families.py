"""Which models belong together, for the pages: families, pairs and the default choices, all read
from each checkpoint's run record (vae_core.runmeta), never from its file name.

A family is the models of one run group (the AE and VAE of one job, the models of one β sweep,
a shipped set); files without a run record form one when their data, network and seed match.
"""
from __future__ import annotations

from typing import Optional

from vae_core import runmeta

# The family Compare β opens on when present, best first: the 20-D family shows β switching
# latent dimensions off, which a 2-D family cannot.
PREFERRED = ("shipped-mnist-d20", "shipped-mnist-d2")
# The family whose pair the explorer pages open on: with d = 2 the latent space is its own map, so
# the map, the grid, the interpolation and the true posterior show the space itself, not a projection.
PAIR_PREFERRED = ("shipped-mnist-d2", "shipped-mnist-d20")
MAX_SHOWN = 8          # the comparison draws one column per model: more no longer fit a screen

sort_key = runmeta.sort_key
beta_of = runmeta.beta
family_label = runmeta.family_label


def families(infos: list) -> dict:
    """{family key: [infos]} of every family of at least two models, AE first then by β."""
    return runmeta.families(infos)


def groups(infos: list) -> dict:
    """{family key: [infos]} of every model: the families, and each other model on its own."""
    out: dict = {}
    for info in infos:
        out.setdefault(runmeta.family_key(info), []).append(info)
    return {k: sorted(v, key=sort_key) for k, v in out.items()}


def default_family(fams: dict, preferred: tuple = PREFERRED) -> Optional[str]:
    """The family a page opens on: a preferred shipped family when present, else the largest
    (the first of equals, so the choice does not depend on a set's order)."""
    for key in preferred:
        if key in fams:
            return key
    return max(fams, key=lambda k: len(fams[k])) if fams else None


def short_label(info: dict) -> str:
    """"AE" or "β=4": what tells the members of one family apart."""
    b = beta_of(info)
    return "AE" if b is None else f"β={b:g}"


def spread(members: list, limit: int = MAX_SHOWN) -> list:
    """At most `limit` of a family's members (in the order given, AE first then by β), spread
    over the whole range so the smallest and the largest β stay in."""
    n = len(members)
    if n <= limit:
        return list(members)
    if limit <= 1:
        return list(members[:limit])
    picks = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [members[i] for i in picks]


def partner_ae(vae: dict, aes: list) -> Optional[dict]:
    """The AE trained beside a VAE (same run group; for files without one, the same data,
    network and seed), or None."""
    return runmeta.partner_ae(vae, aes)


def preferred_vae(vaes: list, aes: list) -> Optional[dict]:
    """The VAE a page opens on: the β = 1 VAE of the explorer's default family (PAIR_PREFERRED; else
    the one closest to β = 1 in it), else a β = 1 VAE with a partner AE, else any VAE with a partner,
    else the first."""
    if not vaes:
        return None
    fam = default_family(families(vaes + aes), PAIR_PREFERRED)
    members = [i for i in vaes if fam is not None and runmeta.family_key(i) == fam]
    if members:
        return min(members, key=lambda i: (abs((beta_of(i) or 0.0) - 1.0), sort_key(i)))
    paired = [v for v in vaes if partner_ae(v, aes)]
    ones = [v for v in paired if beta_of(v) == 1.0]
    return (ones or paired or vaes)[0]


def preferred_ae(vae: dict, aes: list) -> Optional[dict]:
    """The AE shown beside a VAE: its partner, else one with the same latent size, else the first."""
    partner = partner_ae(vae, aes)
    if partner is not None:
        return partner
    dim = vae["model_config"]["latent_dim"]
    same = [a for a in aes if a["model_config"]["latent_dim"] == dim]
    return (same or aes or [None])[0]
