"""Autoencoders over a user's row of seen movies, trained with a multinomial likelihood.

- :mod:`.rows`: what they share: the network interface (a user's binary row in, a logit per catalogue
  movie out, through a representation the last layer is linear over), training on batches of users,
  scoring, the fold-in of a user given only a watched list, persistence and the dot-form export;
- :mod:`.mult`: Mult-VAE and Mult-DAE (Liang et al. 2018), registered as ``mult_vae`` / ``mult_dae``;
- :mod:`.recvae`: RecVAE (Shenbin et al. 2020), registered as ``recvae``.
- :mod:`.vasp`: VASP (Vančura and Kordík 2021), a VAE and a shallow item-item path trained jointly,
  registered as ``vasp``.
"""
