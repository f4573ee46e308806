"""torch.hub entry points: ``torch.hub.load("<this checkout>", "ea_psmnet_light", source="local")``.

Each returns a :class:`stereo.api.StereoModel` (``.predict(left, right)``, ``.network`` the module).
"""

dependencies = ["torch", "numpy", "cv2", "PIL", "omegaconf", "hydra"]


def ea_psmnet_light(pretrained: bool = True, device: str = "auto", checkpoint: str | None = None, **runtime):
    """The light EA-PSMNet (128 px range); ``pretrained``: the weights shipped with the package;
    ``checkpoint``: your own weights of this architecture instead."""
    return _model("ea_psmnet_light", pretrained, device, checkpoint, runtime)


def ea_psmnet(pretrained: bool = False, device: str = "auto", checkpoint: str | None = None, **runtime):
    """EA-PSMNet (192 px range), untrained unless ``checkpoint``: no Scene Flow weights ship with the package."""
    return _model("ea_psmnet", pretrained, device, checkpoint, runtime)


def psmnet(pretrained: bool = False, device: str = "auto", checkpoint: str | None = None, **runtime):
    """PSMNet (Chang & Chen, 2018; 192 px range), untrained unless ``checkpoint`` (an original PSMNet
    ``.tar`` works)."""
    return _model("psmnet", pretrained, device, checkpoint, runtime)


def _model(name: str, pretrained: bool, device: str, checkpoint: str | None, runtime: dict):
    from stereo.api import load_model, untrained_model
    from stereo.errors import ConfigError

    if checkpoint is not None:
        model = load_model(checkpoint, device=device, **runtime)
        held = model.network.config.name
        if held != name:
            raise ConfigError(f"checkpoint={checkpoint} holds a {held} network, not {name}: load it with "
                              f"torch.hub.load(..., '{held}', checkpoint=...)")  # fmt: skip
        return model
    if pretrained:
        if name != "ea_psmnet_light":
            raise ConfigError(f"no pretrained weights ship for {name}; use pretrained=False or ea_psmnet_light")
        return load_model(None, device=device, **runtime)
    return untrained_model(name, device=device, **runtime)
