// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// @notice The EIP-3009 pull the collector uses (FiatToken v2.2 and Stablecoin have it).
interface IERC3009Receivable {
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external;

    function transfer(address to, uint256 value) external returns (bool);
}

/// @title ERC3009DepositCollector
/// @notice Pulls a channel deposit from the payer with EIP-3009
/// `receiveWithAuthorization` and hands it to the BatchSettlement escrow.
/// @dev Written for Farthing against the public interface of the x402
/// collector of the same name. `receiveWithAuthorization` only lets the payee
/// submit, so the tokens land here first and are forwarded at once; only the
/// escrow may call `collect`, so nobody can replay a payer's authorization
/// into someone else's channel. The authorization nonce binds the channel:
/// `keccak256(abi.encode(channelId, salt))`, with `salt` from `collectorData`.
///
/// The escrow's address is an immutable (part of the runtime code): a dev
/// chain places this contract by deploying it with the canonical escrow
/// address and copying the runtime code to the canonical collector address.
contract ERC3009DepositCollector {
    address public immutable x402BatchSettlement;

    error OnlyX402BatchSettlement();
    error InvalidX402BatchSettlementAddress();
    error SafeERC20FailedOperation(address token);

    constructor(address settlement) {
        if (settlement == address(0)) revert InvalidX402BatchSettlementAddress();
        x402BatchSettlement = settlement;
    }

    /// @param collectorData `abi.encode(uint256 validAfter, uint256 validBefore, uint256 salt, bytes signature)`
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external
    {
        if (msg.sender != x402BatchSettlement) revert OnlyX402BatchSettlement();
        (uint256 validAfter, uint256 validBefore, uint256 salt, bytes memory signature) =
            abi.decode(collectorData, (uint256, uint256, uint256, bytes));
        bytes32 nonce = keccak256(abi.encode(channelId, salt));
        IERC3009Receivable(token).receiveWithAuthorization(
            payer, address(this), amount, validAfter, validBefore, nonce, signature
        );
        (bool ok, bytes memory data) =
            token.call(abi.encodeCall(IERC3009Receivable.transfer, (x402BatchSettlement, amount)));
        if (!ok || (data.length != 0 && !abi.decode(data, (bool)))) revert SafeERC20FailedOperation(token);
    }
}
