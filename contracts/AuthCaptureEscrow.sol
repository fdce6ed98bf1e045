// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// @notice The ERC-20 calls the escrow and its token stores make.
interface IEscrowToken {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 value) external returns (bool);
}

/// @notice The pull the escrow delegates collection to (ERC3009PaymentCollector,
/// OperatorRefundCollector). A collector must leave exactly `amount` more of the
/// token at `tokenStore`; the escrow measures it.
interface IAuthCaptureTokenCollector {
    function collectorType() external view returns (uint8);

    function collectTokens(
        AuthCaptureEscrow.PaymentInfo calldata paymentInfo,
        address tokenStore,
        uint256 amount,
        bytes calldata collectorData
    ) external;
}

/// @title TokenStore
/// @notice Holds the escrowed tokens of one operator's payments. Created by the
/// escrow with CREATE2 (salt: the operator's address), so its address is known
/// before it exists and collectors can fill it first; only the escrow moves its tokens.
contract TokenStore {
    address public immutable authCaptureEscrow;

    error OnlyAuthCaptureEscrow();

    constructor() {
        authCaptureEscrow = msg.sender;
    }

    function sendTokens(address token, address recipient, uint256 amount) external returns (bool) {
        if (msg.sender != authCaptureEscrow) revert OnlyAuthCaptureEscrow();
        (bool ok, bytes memory data) = token.call(abi.encodeCall(IEscrowToken.transfer, (recipient, amount)));
        // A token's own refusal ("transfer amount exceeds ...") is the clearest reason: pass it on.
        if (!ok && data.length > 0) {
            assembly ("memory-safe") {
                revert(add(data, 32), mload(data))
            }
        }
        if (!ok || (data.length != 0 && !abi.decode(data, (bool))) || (data.length == 0 && token.code.length == 0)) {
            revert AuthCaptureEscrow.SafeERC20FailedOperation(token);
        }
        return true;
    }
}

/// @title AuthCaptureEscrow
/// @notice Authorize (hold), capture (fully or in parts), void, charge, refund and
/// reclaim a payment, for the x402 `auth-capture` scheme.
/// @dev Written for Farthing against the public ABI of the commerce-payments
/// AuthCaptureEscrow v1.1 (the x402 spec's default deployment): the same
/// PaymentInfo struct and hash, functions, events and custom errors, with the
/// submitted fee as an absolute `feeAmount`. Internals are our own: a transient
/// reentrancy lock, and per-operator token stores deployed with plain CREATE2
/// (no clone implementation, so the escrow has no immutables and its runtime
/// code can be placed as is at the canonical address on a dev chain).
///
/// Every operation but `reclaim` is sent by `paymentInfo.operator`; `reclaim` is
/// the payer's own, once `authorizationExpiry` has passed.
contract AuthCaptureEscrow {
    struct PaymentInfo {
        address operator;
        address payer;
        address receiver;
        address token;
        uint120 maxAmount;
        uint48 preApprovalExpiry;
        uint48 authorizationExpiry;
        uint48 refundExpiry;
        uint16 minFeeBps;
        uint16 maxFeeBps;
        address feeReceiver;
        uint256 salt;
    }

    struct PaymentState {
        bool hasCollectedPayment;
        uint120 capturableAmount;
        uint120 refundableAmount;
    }

    /// @dev Collector kinds, as `collectorType()` reports them.
    uint8 internal constant _PAYMENT_COLLECTOR = 0;
    uint8 internal constant _REFUND_COLLECTOR = 1;

    bytes32 public constant PAYMENT_INFO_TYPEHASH = keccak256(
        "PaymentInfo(address operator,address payer,address receiver,address token,uint120 maxAmount,uint48 preApprovalExpiry,uint48 authorizationExpiry,uint48 refundExpiry,uint16 minFeeBps,uint16 maxFeeBps,address feeReceiver,uint256 salt)"
    );

    uint16 internal constant _MAX_FEE_BPS = 10_000;

    mapping(bytes32 paymentInfoHash => PaymentState state) public paymentState;

    bool private transient _entered;

    event PaymentCharged(
        bytes32 indexed paymentInfoHash,
        PaymentInfo paymentInfo,
        uint256 amount,
        address tokenCollector,
        uint256 feeAmount,
        address feeReceiver
    );
    event PaymentAuthorized(
        bytes32 indexed paymentInfoHash, PaymentInfo paymentInfo, uint256 amount, address tokenCollector
    );
    event PaymentCaptured(bytes32 indexed paymentInfoHash, uint256 amount, uint256 feeAmount, address feeReceiver);
    event PaymentVoided(bytes32 indexed paymentInfoHash, uint256 amount);
    event PaymentReclaimed(bytes32 indexed paymentInfoHash, uint256 amount);
    event PaymentRefunded(bytes32 indexed paymentInfoHash, uint256 amount, address tokenCollector);
    event TokenStoreCreated(address indexed operator, address tokenStore);

    error InvalidSender(address sender, address expected);
    error ZeroAmount();
    error AmountOverflow(uint256 amount, uint256 limit);
    error ExceedsMaxAmount(uint256 amount, uint256 maxAmount);
    error AfterPreApprovalExpiry(uint48 timestamp, uint48 expiry);
    error InvalidExpiries(uint48 preApproval, uint48 authorization, uint48 refund);
    error FeeBpsOverflow(uint16 feeBps);
    error InvalidFeeBpsRange(uint16 minFeeBps, uint16 maxFeeBps);
    error FeeAmountOutOfRange(uint256 feeAmount, uint256 minFeeAmount, uint256 maxFeeAmount);
    error ZeroFeeReceiver();
    error InvalidFeeReceiver(address attempted, address expected);
    error InvalidCollectorForOperation();
    error TokenCollectionFailed();
    error PaymentAlreadyCollected(bytes32 paymentInfoHash);
    error AfterAuthorizationExpiry(uint48 timestamp, uint48 expiry);
    error InsufficientAuthorization(bytes32 paymentInfoHash, uint256 authorizedAmount, uint256 requestedAmount);
    error ZeroAuthorization(bytes32 paymentInfoHash);
    error BeforeAuthorizationExpiry(uint48 timestamp, uint48 expiry);
    error AfterRefundExpiry(uint48 timestamp, uint48 expiry);
    error RefundExceedsCapture(uint256 refund, uint256 captured);
    error Reentrancy();
    error SafeERC20FailedOperation(address token);

    modifier nonReentrant() {
        if (_entered) revert Reentrancy();
        _entered = true;
        _;
        _entered = false;
    }

    modifier onlySender(address expected) {
        if (msg.sender != expected) revert InvalidSender(msg.sender, expected);
        _;
    }

    modifier validAmount(uint256 amount) {
        if (amount == 0) revert ZeroAmount();
        if (amount > type(uint120).max) revert AmountOverflow(amount, type(uint120).max);
        _;
    }

    // ------------------------------------------------------------ collect

    /// @notice Collect `amount` from the payer and pay it out at once (no hold).
    function charge(
        PaymentInfo calldata paymentInfo,
        uint256 amount,
        address tokenCollector,
        bytes calldata collectorData,
        uint256 feeAmount,
        address feeReceiver
    ) external nonReentrant onlySender(paymentInfo.operator) validAmount(amount) {
        _validatePayment(paymentInfo, amount);
        _validateFee(paymentInfo, amount, feeAmount, feeReceiver);
        bytes32 paymentInfoHash = getHash(paymentInfo);
        if (paymentState[paymentInfoHash].hasCollectedPayment) revert PaymentAlreadyCollected(paymentInfoHash);

        paymentState[paymentInfoHash] =
            PaymentState({hasCollectedPayment: true, capturableAmount: 0, refundableAmount: uint120(amount)});
        emit PaymentCharged(paymentInfoHash, paymentInfo, amount, tokenCollector, feeAmount, feeReceiver);

        _collectTokens(paymentInfo, amount, tokenCollector, collectorData, _PAYMENT_COLLECTOR);
        _distributeTokens(paymentInfo, amount, feeAmount, feeReceiver);
    }

    /// @notice Collect `amount` from the payer into the operator's token store: the hold.
    function authorize(
        PaymentInfo calldata paymentInfo,
        uint256 amount,
        address tokenCollector,
        bytes calldata collectorData
    ) external nonReentrant onlySender(paymentInfo.operator) validAmount(amount) {
        _validatePayment(paymentInfo, amount);
        bytes32 paymentInfoHash = getHash(paymentInfo);
        if (paymentState[paymentInfoHash].hasCollectedPayment) revert PaymentAlreadyCollected(paymentInfoHash);

        paymentState[paymentInfoHash] =
            PaymentState({hasCollectedPayment: true, capturableAmount: uint120(amount), refundableAmount: 0});
        emit PaymentAuthorized(paymentInfoHash, paymentInfo, amount, tokenCollector);

        _collectTokens(paymentInfo, amount, tokenCollector, collectorData, _PAYMENT_COLLECTOR);
    }

    // ------------------------------------------------------------ lifecycle

    /// @notice Pay `amount` of the hold to the receiver (less `feeAmount` to `feeReceiver`).
    /// Repeatable up to the hold, before `authorizationExpiry`.
    function capture(PaymentInfo calldata paymentInfo, uint256 amount, uint256 feeAmount, address feeReceiver)
        external
        nonReentrant
        onlySender(paymentInfo.operator)
        validAmount(amount)
    {
        _validateFee(paymentInfo, amount, feeAmount, feeReceiver);
        if (block.timestamp >= paymentInfo.authorizationExpiry) {
            revert AfterAuthorizationExpiry(uint48(block.timestamp), paymentInfo.authorizationExpiry);
        }
        bytes32 paymentInfoHash = getHash(paymentInfo);
        PaymentState memory state = paymentState[paymentInfoHash];
        if (state.capturableAmount < amount) {
            revert InsufficientAuthorization(paymentInfoHash, state.capturableAmount, amount);
        }

        state.capturableAmount -= uint120(amount);
        state.refundableAmount += uint120(amount);
        paymentState[paymentInfoHash] = state;
        emit PaymentCaptured(paymentInfoHash, amount, feeAmount, feeReceiver);

        _distributeTokens(paymentInfo, amount, feeAmount, feeReceiver);
    }

    /// @notice Release the whole remaining hold back to the payer.
    function void(PaymentInfo calldata paymentInfo) external nonReentrant onlySender(paymentInfo.operator) {
        bytes32 paymentInfoHash = getHash(paymentInfo);
        uint256 held = paymentState[paymentInfoHash].capturableAmount;
        if (held == 0) revert ZeroAuthorization(paymentInfoHash);

        paymentState[paymentInfoHash].capturableAmount = 0;
        emit PaymentVoided(paymentInfoHash, held);

        _sendTokens(paymentInfo.operator, paymentInfo.token, paymentInfo.payer, held);
    }

    /// @notice The payer takes its remaining hold back once `authorizationExpiry` has passed.
    function reclaim(PaymentInfo calldata paymentInfo) external nonReentrant onlySender(paymentInfo.payer) {
        if (block.timestamp < paymentInfo.authorizationExpiry) {
            revert BeforeAuthorizationExpiry(uint48(block.timestamp), paymentInfo.authorizationExpiry);
        }
        bytes32 paymentInfoHash = getHash(paymentInfo);
        uint256 held = paymentState[paymentInfoHash].capturableAmount;
        if (held == 0) revert ZeroAuthorization(paymentInfoHash);

        paymentState[paymentInfoHash].capturableAmount = 0;
        emit PaymentReclaimed(paymentInfoHash, held);

        _sendTokens(paymentInfo.operator, paymentInfo.token, paymentInfo.payer, held);
    }

    /// @notice Return up to the captured, not yet refunded amount to the payer, before
    /// `refundExpiry`. The tokens come in through a refund collector (the
    /// OperatorRefundCollector pulls them from the operator).
    function refund(
        PaymentInfo calldata paymentInfo,
        uint256 amount,
        address tokenCollector,
        bytes calldata collectorData
    ) external nonReentrant onlySender(paymentInfo.operator) validAmount(amount) {
        if (block.timestamp >= paymentInfo.refundExpiry) {
            revert AfterRefundExpiry(uint48(block.timestamp), paymentInfo.refundExpiry);
        }
        bytes32 paymentInfoHash = getHash(paymentInfo);
        uint120 captured = paymentState[paymentInfoHash].refundableAmount;
        if (captured < amount) revert RefundExceedsCapture(amount, captured);

        paymentState[paymentInfoHash].refundableAmount = captured - uint120(amount);
        emit PaymentRefunded(paymentInfoHash, amount, tokenCollector);

        _collectTokens(paymentInfo, amount, tokenCollector, collectorData, _REFUND_COLLECTOR);
        _sendTokens(paymentInfo.operator, paymentInfo.token, paymentInfo.payer, amount);
    }

    // ------------------------------------------------------------ views

    /// @notice The payment's id: bound to this chain and this escrow.
    function getHash(PaymentInfo calldata paymentInfo) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(PAYMENT_INFO_TYPEHASH, paymentInfo));
        return keccak256(abi.encode(block.chainid, address(this), structHash));
    }

    /// @notice Where an operator's escrowed tokens sit (deployed on first payout).
    function getTokenStore(address operator) public view returns (address) {
        bytes32 initCodeHash = keccak256(type(TokenStore).creationCode);
        bytes32 digest = keccak256(abi.encodePacked(bytes1(0xff), address(this), _storeSalt(operator), initCodeHash));
        return address(uint160(uint256(digest)));
    }

    // ------------------------------------------------------------ internals

    function _storeSalt(address operator) private pure returns (bytes32) {
        return bytes32(bytes20(operator));
    }

    function _collectTokens(
        PaymentInfo calldata paymentInfo,
        uint256 amount,
        address tokenCollector,
        bytes calldata collectorData,
        uint8 expectedType
    ) private {
        (bool ok, bytes memory kind) =
            tokenCollector.staticcall(abi.encodeCall(IAuthCaptureTokenCollector.collectorType, ()));
        if (!ok || kind.length != 32 || abi.decode(kind, (uint256)) != expectedType) {
            revert InvalidCollectorForOperation();
        }
        address token = paymentInfo.token;
        address tokenStore = getTokenStore(paymentInfo.operator);
        uint256 before = IEscrowToken(token).balanceOf(tokenStore);
        IAuthCaptureTokenCollector(tokenCollector).collectTokens(paymentInfo, tokenStore, amount, collectorData);
        if (IEscrowToken(token).balanceOf(tokenStore) != before + amount) revert TokenCollectionFailed();
    }

    function _sendTokens(address operator, address token, address recipient, uint256 amount) private {
        address tokenStore = getTokenStore(operator);
        if (tokenStore.code.length == 0) {
            address created = address(new TokenStore{salt: _storeSalt(operator)}());
            // Both sides derive the address the same way; a mismatch would strand funds.
            assert(created == tokenStore);
            emit TokenStoreCreated(operator, tokenStore);
        }
        TokenStore(tokenStore).sendTokens(token, recipient, amount);
    }

    function _distributeTokens(PaymentInfo calldata paymentInfo, uint256 amount, uint256 feeAmount, address feeReceiver)
        private
    {
        if (feeAmount > 0) _sendTokens(paymentInfo.operator, paymentInfo.token, feeReceiver, feeAmount);
        if (amount > feeAmount) {
            _sendTokens(paymentInfo.operator, paymentInfo.token, paymentInfo.receiver, amount - feeAmount);
        }
    }

    function _validatePayment(PaymentInfo calldata paymentInfo, uint256 amount) private view {
        uint48 preApproval = paymentInfo.preApprovalExpiry;
        uint48 authorization = paymentInfo.authorizationExpiry;
        uint48 refundBy = paymentInfo.refundExpiry;
        uint48 now_ = uint48(block.timestamp);
        if (amount > paymentInfo.maxAmount) revert ExceedsMaxAmount(amount, paymentInfo.maxAmount);
        if (now_ >= preApproval) revert AfterPreApprovalExpiry(now_, preApproval);
        if (preApproval > authorization || authorization > refundBy) {
            revert InvalidExpiries(preApproval, authorization, refundBy);
        }
        if (paymentInfo.maxFeeBps > _MAX_FEE_BPS) revert FeeBpsOverflow(paymentInfo.maxFeeBps);
        if (paymentInfo.minFeeBps > paymentInfo.maxFeeBps) {
            revert InvalidFeeBpsRange(paymentInfo.minFeeBps, paymentInfo.maxFeeBps);
        }
    }

    /// @dev The fee is bounded per operation by the client-signed basis points of
    /// that operation's amount (integer division, rounding the bounds down).
    function _validateFee(PaymentInfo calldata paymentInfo, uint256 amount, uint256 feeAmount, address feeReceiver)
        private
        pure
    {
        uint256 minFee = amount * paymentInfo.minFeeBps / _MAX_FEE_BPS;
        uint256 maxFee = amount * paymentInfo.maxFeeBps / _MAX_FEE_BPS;
        if (feeAmount < minFee || feeAmount > maxFee) revert FeeAmountOutOfRange(feeAmount, minFee, maxFee);
        if (feeReceiver == address(0) && feeAmount > 0) revert ZeroFeeReceiver();
        address fixedReceiver = paymentInfo.feeReceiver;
        if (fixedReceiver != address(0) && fixedReceiver != feeReceiver) {
            revert InvalidFeeReceiver(feeReceiver, fixedReceiver);
        }
    }
}
