"""Physics validation: the models against closed forms and authorities (``orbitwin validate``)."""
