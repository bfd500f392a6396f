"""An inspector's checks over the whole house: ``ecard admin audit verify``."""
