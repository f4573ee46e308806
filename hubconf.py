"""torch.hub entry points: ``torch.hub.load("<this checkout>", "ea_psmnet_light", source="local")``.

Each returns a :class:`stereo.api.StereoModel` (``.predict(left, right)``, ``.network`` the module).
"""

dependencies = ["torch", "numpy", "cv2", "PIL", "omegaconf", "hydra"]


def ea_psmnet_light(pretrained: bool = True, device: str = "auto", **runtime):
    """The light EA-PSMNet (128 px range); ``pretrained``: the weights shipped with the package."""
    return _model("ea_psmnet_light", pretrained, device, runtime)


def ea_psmnet(pretrained: bool = False, device: str = "auto", **runtime):
    """EA-PSMNet (192 px range), untrained: no Scene Flow weights ship with the package."""
    return _model("ea_psmnet", pretrained, device, runtime)


def psmnet(pretrained: bool = False, device: str = "auto", **runtime):
    """PSMNet (Chang & Chen, 2018; 192 px range), untrained."""
    return _model("psmnet", pretrained, device, runtime)


def _model(name: str, pretrained: bool, device: str, runtime: dict):
    from stereo.api import load_model, untrained_model

    if pretrained:
        if name != "ea_psmnet_light":
            raise ValueError(f"no pretrained weights ship for {name}; use pretrained=False or ea_psmnet_light")
        return load_model(None, device=device, **runtime)
    return untrained_model(name, device=device, **runtime)
